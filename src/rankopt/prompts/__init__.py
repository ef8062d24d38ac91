"""Prompt learning on a frozen vision-language model (GalLoP, CoOp): ``rankopt prompt``."""
