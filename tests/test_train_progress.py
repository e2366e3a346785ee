"""The epoch progress display both recipes share."""

from esva.recipes.progress import EpochProgress


def test_summary_line_names_loss_and_the_validation_keys_present():
    progress = EpochProgress(True, "train_loss", ("val_loss", "val_weighted_f1"))
    record = {"epoch": 3, "train_loss": 0.41234, "val_weighted_f1": 0.7, "seconds": 12.34}
    assert progress.summary(record) == "epoch   3  loss 0.412  weighted_f1 0.700  12.3s"
    progress.start("epoch 3/5", total=4, done=1)  # a resumed epoch starts part-way
    progress.advance(0.5)
    assert progress.bar.tasks[0].completed == 2
    progress.stop()
    assert progress.bar is None


def test_disabled_progress_prints_nothing(capsys):
    progress = EpochProgress(False, "train_total", ())
    progress.start("epoch 1/1", total=2)
    progress.advance(1.0)
    progress.log({"epoch": 1, "train_total": 1.0, "seconds": 1.0}, improved=True)
    progress.stop()
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
