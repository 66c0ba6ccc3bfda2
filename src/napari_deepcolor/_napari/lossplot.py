"""A small live plot of the training loss, painted with QPainter (no plotting dependency)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: the most points drawn; longer runs are drawn from evenly spaced points (all are kept)
MAX_DRAWN = 600


class LossPlot(QWidget):
    """Loss per iteration (thin, light) and its running mean (thick), on a log axis when it spans decades."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.iterations: list[int] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.validations: list[tuple[int, float]] = []  # (iteration, AP) markers
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Training loss: thin line per iteration, thick line its running mean. "
                        "It should fall and flatten; green ticks mark validation.")

    def clear(self) -> None:
        self.iterations.clear()
        self.losses.clear()
        self.smoothed.clear()
        self.validations.clear()
        self.update()

    def add_point(self, iteration: int, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self.iterations.append(int(iteration))
        self.losses.append(float(loss))
        alpha = 2 / (1 + min(50, max(5, len(self.losses) // 10)))
        previous = self.smoothed[-1] if self.smoothed else loss
        self.smoothed.append(previous + alpha * (loss - previous))
        self.update()

    def add_validation(self, iteration: int, score: float) -> None:
        self.validations.append((int(iteration), float(score)))
        self.update()

    # -- painting ------------------------------------------------------------------
    def _log_scale(self) -> bool:
        low, high = min(self.losses), max(self.losses)
        return low > 0 and high / low > 30

    def paintEvent(self, event):  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_color = palette.color(palette.ColorRole.WindowText)
        frame = QRectF(self.rect()).adjusted(46, 8, -8, -20)
        painter.setPen(QPen(QColor(text_color.red(), text_color.green(), text_color.blue(), 90), 1))
        painter.drawRect(frame)
        painter.setPen(text_color)
        if len(self.losses) < 2:
            painter.drawText(frame, Qt.AlignmentFlag.AlignCenter, "the loss appears here during training")
            painter.end()
            return
        log_scale = self._log_scale()
        value = (lambda v: math.log10(v)) if log_scale else (lambda v: v)
        values = [value(v) for v in self.losses]
        low, high = min(values), max(values)
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5
        first, last = self.iterations[0], max(self.iterations[-1], self.iterations[0] + 1)

        def point(iteration, v):
            x = frame.left() + (iteration - first) / (last - first) * frame.width()
            y = frame.bottom() - (v - low) / (high - low) * frame.height()
            return QPointF(x, y)

        stride = max(1, len(values) // MAX_DRAWN)
        for series, color, width in ((values, QColor(100, 160, 255, 110), 1.0),
                                     ([value(v) for v in self.smoothed], QColor(255, 170, 40), 2.0)):
            path = QPainterPath(point(self.iterations[0], series[0]))
            for i in range(stride, len(series), stride):
                path.lineTo(point(self.iterations[i], series[i]))
            path.lineTo(point(self.iterations[-1], series[-1]))
            painter.setPen(QPen(color, width))
            painter.drawPath(path)
        painter.setPen(QPen(QColor(80, 200, 120), 2))
        for iteration, _ in self.validations:
            x = point(iteration, low).x()
            painter.drawLine(QPointF(x, frame.bottom()), QPointF(x, frame.bottom() - 6))
        painter.setPen(text_color)
        shown = (lambda v: f"{10 ** v:.3g}") if log_scale else (lambda v: f"{v:.3g}")
        painter.drawText(QRectF(0, frame.top() - 6, 44, 14), Qt.AlignmentFlag.AlignRight, shown(high))
        painter.drawText(QRectF(0, frame.bottom() - 8, 44, 14), Qt.AlignmentFlag.AlignRight, shown(low))
        painter.drawText(QRectF(frame.left(), frame.bottom() + 2, frame.width(), 16),
                         Qt.AlignmentFlag.AlignLeft, f"{first}")
        painter.drawText(QRectF(frame.left(), frame.bottom() + 2, frame.width(), 16),
                         Qt.AlignmentFlag.AlignHCenter,
                         f"loss{' (log)' if log_scale else ''} · last {self.smoothed[-1]:.3g}")
        painter.drawText(QRectF(frame.left(), frame.bottom() + 2, frame.width(), 16),
                         Qt.AlignmentFlag.AlignRight, f"iteration {self.iterations[-1]}")
        painter.end()
