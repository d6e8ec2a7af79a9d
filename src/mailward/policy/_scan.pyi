def scan(
    raw: bytes | bytearray,
    names: tuple[str, ...],
    max_lines: int,
    start: int = ...,
    end: int = ...,
    /,
) -> dict[str, str] | int: ...
