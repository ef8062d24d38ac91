"""The report's training figure: loss and the validation metric on axes of their own, whole epochs."""

from rankopt.report import figures


def test_a_one_epoch_run_is_drawn_over_whole_epochs_with_two_axes():
    fig = figures.training([(1, 0.4)], [(1, 0.31)], "valid map@r", mark_x=1)
    left, right = fig.axes
    assert left.get_xlim() == (0.5, 1.5)
    assert left.get_ylabel() == "training loss" and right.get_ylabel() == "valid map@r"
    assert all(float(t).is_integer() for t in left.get_xticks())
    fig = figures.training([(1, 0.4), (2, 0.3), (3, 0.2)], [], "valid map@r")
    assert len(fig.axes) == 1 and fig.axes[0].get_xlim() == (1, 3)
