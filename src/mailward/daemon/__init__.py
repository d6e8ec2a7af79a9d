"""The long-running daemon: wires sources → parsers → detectors → enforcers and the policy servers."""
