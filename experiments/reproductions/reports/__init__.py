"""The write-up of each reproduction: its figure and README paragraph,
made from `results.json` alone, apart from the script that measures (the
method), and the helpers they share."""


def pyplot():
  """matplotlib.pyplot on the Agg backend: figures are files here."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save(fig, path: str, dpi: int = 110) -> str:
  """Lays out, writes and closes the figure; returns its path."""
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  pyplot().close(fig)
  return path


def pct(x: float) -> str:
  return f"{100 * x:.1f}%"


def points(x: float) -> str:
  return f"{100 * x:+.1f} points"
