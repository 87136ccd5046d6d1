"""Field checks for the frozen config dataclasses."""


def check_field(config, name: str, ok: bool, allowed) -> None:
  """Raises ValueError naming the class, field, value and what is allowed."""
  if not ok:
    value = getattr(config, name)
    raise ValueError(
      f"{type(config).__name__}.{name}={value!r}: allowed {allowed}"
    )
