"""The README's generated sections: each stands between `<!-- BEGIN name
-->` and `<!-- END name -->` and is written by a script, never by hand."""

import os
import re

README = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"
)


def replace_section(path: str, name: str, text: str) -> None:
  """Replaces what stands between `<!-- BEGIN name -->` and `<!-- END
  name -->` in the file at `path` by `text`."""
  with open(path) as f:
    readme = f.read()
  begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
  pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
  if not pattern.search(readme):
    raise SystemExit(f"{path} has no {begin} ... {end} section")
  readme = pattern.sub(lambda _: f"{begin}\n{text}\n{end}", readme)
  with open(path, "w") as f:
    f.write(readme)
