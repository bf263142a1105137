"""Shared by the figure tests: catch the figures lensflow saves, and read their text."""

import matplotlib.text
import pytest

from lensflow.core import plots


@pytest.fixture
def captured(monkeypatch):
    """Figures handed to save_figure (still inspectable after they are closed)."""
    figs = []
    real = plots.save_figure

    def spy(fig, png, pdf, dpi=plots.DPI):
        figs.append(fig)
        real(fig, png, pdf, dpi=dpi)

    monkeypatch.setattr(plots, "save_figure", spy)
    return figs


def texts(fig):
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
