def take(
    buf: bytes | bytearray,
    names: tuple[str, ...],
    max_lines: int,
    start: int,
    limit: int,
    into: dict[str, str],
    /,
) -> int: ...
def frame(buf: bytes | bytearray, start: int, /) -> int: ...
def scan(
    raw: bytes | bytearray,
    names: tuple[str, ...],
    max_lines: int,
    start: int = ...,
    end: int = ...,
    /,
) -> dict[str, str] | int: ...
def ipv4(text: str, /) -> int: ...
