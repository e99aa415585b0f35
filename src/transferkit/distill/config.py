"""DistillConfig: everything a ``distill`` run needs; saved as ``distill.yaml`` in the run (reproduces it)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import MAX_IMAGE_SIZE, MAX_LENGTH, MAX_THREADS, FitConfig, TrainConfig, YamlConfig, setting
from ..errors import ConfigError, bad_param

TEACHER_COPY = "teacher"  # --student teacher: the teacher's own architecture and fine-tuned weights


@dataclass
class DistillConfig(YamlConfig):
    """Knowledge distillation of a fitted teacher run into a smaller student on the same task."""

    teacher: str | None = setting(None, "the teacher: a classification run folder (runs/NAME) of fit, adapt or "
                                        "distill")
    student: str | None = setting(None, "student backbone spec (scratch:cnn, packaged:efficientnet_lite0, "
                                        "timm:NAME, hf:DIR, run:PATH) or 'teacher' (a copy of the teacher); "
                                        "leave it out with --student-layers K")
    student_layers: int | None = setting(None, "student = the first K transformer layers of the teacher's "
                                               "encoder, initialised from the teacher's fine-tuned weights")
    temperature: float = setting(2.0, "softmax temperature T of the soft targets (the KL term is scaled by T^2)")
    alpha: float = setting(0.5, "weight of the hard-label cross-entropy; 1 - alpha weighs the soft-target KL "
                                "(1: no distillation)")
    feature_loss: float = setting(0.0, "weight of the MSE between the student's features, through a learned "
                                       "linear projection, and the teacher's (0: off)")
    compare: bool = setting(True, "also train the same student without distillation (plain fine-tune, same "
                                  "split, seed and initialisation) for the report")
    seed: int = setting(0, "seed of the splits, initialisation and batch order")
    # data
    train: str | None = setting(None, "labelled data: image folder (one sub-folder per class) or "
                                      "CSV/JSONL/Parquet table")
    unlabelled: str | None = setting(None, "unlabelled data of the same kind (labels, if any, ignored): they join "
                                           "the transfer set with the teacher's soft targets only")
    val: str | None = setting(None, "validation data (default: split from train)")
    test: str | None = setting(None, "test data (default: split from train)")
    text_column: str | None = setting(None, "text column(s) of a table, comma-separated columns are joined")
    image_column: str | None = setting(None, "image-path column of a table")
    label_column: str = setting("label", "label column of a table")
    id_column: str | None = setting(None, "id column of a table")
    val_fraction: float = setting(0.15, "fraction of train held out for validation when --val is not given")
    test_fraction: float = setting(0.15, "fraction of train held out for testing when --test is not given")
    strict: bool = setting(False, "stop at the first unreadable image instead of skipping it")
    image_size: int | None = setting(None, "student input size in pixels (default: the student backbone's)")
    max_length: int | None = setting(None, "student tokens per text (default: the teacher's)")
    training: TrainConfig = setting(factory=TrainConfig, help="training settings of the student (and of the "
                                                              "comparison student)")
    # engineering
    num_threads: int | None = setting(None, "torch threads (default: all cores)")
    runs_dir: str = setting("runs", "folder of the runs")
    name: str | None = setting(None, "run name (default: distill-STUDENT-time)")
    overwrite: bool = setting(False, "replace an existing run of this name")

    def validate(self) -> DistillConfig:
        """Types and ranges (one-line ``ConfigError``s); the teacher and student are checked by ``distill``."""
        from ..backbones import parse_spec

        self.check_types("DistillConfig")
        if not self.teacher:
            raise ConfigError("No teacher: pass --teacher RUN (a classification run folder such as runs/NAME).")
        if self.student is None and self.student_layers is None:
            raise ConfigError("No student: pass --student SPEC (e.g. scratch:cnn, packaged:efficientnet_lite0) or "
                              "--student-layers K (the teacher's first K transformer layers).")
        if self.student is not None and self.student != TEACHER_COPY:
            if self.student_layers is not None:
                raise ConfigError(f"--student-layers keeps layers of the teacher's own encoder; it cannot apply to "
                                  f"--student {self.student!r}. Drop one of the two.")
            prefix, _ = parse_spec(self.student)
            if prefix == "classical":
                raise ConfigError(f"Student '{self.student}' is a classical featuriser; a student is trained end to "
                                  "end. Use a pretrained or scratch backbone (see `transferkit info`).")
        if self.student_layers is not None and (not isinstance(self.student_layers, int)
                                                or isinstance(self.student_layers, bool) or self.student_layers < 1):
            raise bad_param("DistillConfig", "student_layers", "an integer >= 1", self.student_layers)
        for name, ok, expected in (("temperature", lambda v: v > 0, "a float in (0, inf)"),
                                   ("alpha", lambda v: 0 <= v <= 1, "a float in [0, 1]"),
                                   ("feature_loss", lambda v: v >= 0, "a float >= 0")):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not ok(v):
                raise bad_param("DistillConfig", name, expected, v)
        if not isinstance(self.training, TrainConfig):
            raise bad_param("DistillConfig", "training", "a TrainConfig", self.training)
        self.training.validate("DistillConfig")
        for name, lo, hi in (("seed", 0, 2**63 - 1), ("num_threads", 1, MAX_THREADS),
                             ("image_size", 8, MAX_IMAGE_SIZE), ("max_length", 2, MAX_LENGTH)):
            v = getattr(self, name)
            if v is None and name != "seed":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise bad_param("DistillConfig", name, f"an integer in [{lo}, {hi}]", v)
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise bad_param("DistillConfig", name, "a float in [0, 1)", v)
        for name in ("train", "unlabelled", "val", "test"):
            if getattr(self, name) == "":
                raise bad_param("DistillConfig", name, "a path to data (or left out)", "")
        if self.name is not None and (self.name in ("", ".", "..") or any(c in self.name for c in "/\\\0")):
            raise bad_param("DistillConfig", "name", "a plain folder name (no '/', '\\', or '..')", self.name)
        return self

    def fit_view(self, backbone: str, head: str = "linear") -> FitConfig:
        """The student as a fit run's config (``config.yaml``: what ``load_run`` / predict / evaluate read)."""
        return FitConfig(backbone=backbone, strategy="fine-tune", task="classification", seed=self.seed,
                         train=self.train, val=self.val, test=self.test, text_column=self.text_column,
                         image_column=self.image_column, label_column=self.label_column, id_column=self.id_column,
                         val_fraction=self.val_fraction, test_fraction=self.test_fraction, strict=self.strict,
                         image_size=self.image_size, max_length=self.max_length, training=self.training, head=head,
                         num_threads=self.num_threads, runs_dir=self.runs_dir, name=self.name,
                         overwrite=self.overwrite)
