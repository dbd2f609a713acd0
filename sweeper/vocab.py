"""The names sweeper writes into MLflow and Optuna: run tags, trial attributes and metrics.

Writers (`runs/`, `sweep/`) and readers (`runs/db.py`, `tables/`, `analysis/`) import them from
here, so a name is spelt once. Tags and trial user attributes share the `sweeper.` prefix.
"""

from __future__ import annotations

PREFIX = "sweeper."


class Tag:
    """MLflow run tags."""

    ROLE = PREFIX + "role"  # "sweep" (the parent run of a spec and profile) or "cell"
    # On the experiment: the spec file that last ran it (resolved path) and the sha256 of its text (12 hex)
    SPEC_FILE = PREFIX + "spec_file"
    SPEC_DIGEST = PREFIX + "spec_digest"
    SPEC = PREFIX + "spec"
    PROFILE = PREFIX + "profile"
    TABLE = PREFIX + "table"  # the spec's table layout, JSON, on the sweep run
    ROW = PREFIX + "row"
    ROW_INDEX = PREFIX + "row_index"
    SEED = PREFIX + "seed"
    CELL = PREFIX + "cell"  # the hash of the cell's resolved config
    STATE = PREFIX + "state"  # running | finished | failed | pruned | interrupted
    WORKER = PREFIX + "worker"  # host:pid of the process training the cell
    ERROR = PREFIX + "error"
    PRUNED = PREFIX + "pruned"
    RESUMES = PREFIX + "resumes"
    RESUMED_FROM_EPOCH = PREFIX + "resumed_from_epoch"
    STUDY = PREFIX + "study"
    TRIAL = PREFIX + "trial"
    MODEL_URI = PREFIX + "model_uri"
    ARTIFACTS_ERROR = PREFIX + "artifacts_error"
    DEVICE = PREFIX + "device"
    DEVICE_NAME = PREFIX + "device_name"
    PRECISION = PREFIX + "precision"  # what the run computed in (`auto` resolved, kept across resumes)
    PRECISION_CONVERTED = PREFIX + "precision_converted"  # a resume that could not keep it: "bf16 -> fp16: ..."
    TF32 = PREFIX + "tf32"  # "on" when fp32 matmuls/convolutions ran as TF32 (precision tf32 on a CUDA GPU)
    # A cell's own GPU (CUDA only): MLflow's system metrics list every GPU of the host as gpu_<i>,
    # NVML's index; GPU_METRICS names the cell's series, the others identify the card wherever it sits.
    GPU_UUID = PREFIX + "gpu_uuid"
    GPU_PCI = PREFIX + "gpu_pci_bus_id"
    GPU_CAPABILITY = PREFIX + "gpu_capability"
    GPU_MASK = PREFIX + "cuda_visible_devices"  # the mask the cell's process ran under
    GPU_ORDER = PREFIX + "cuda_device_order"
    GPU_METRICS = PREFIX + "gpu_metrics"  # "gpu_3": the system-metrics series of this cell's GPU
    TORCH = PREFIX + "torch"
    CUDA = PREFIX + "cuda"
    CUDNN = PREFIX + "cudnn"
    HOST = PREFIX + "host"
    GIT_DIRTY = PREFIX + "git_dirty"
    # The user's code a cell ran, one tag per block that names it (sweeper.code.model, .activation, .loss,
    # .optimizer): "nets.py:MyNet@<sha256 of the file, 12 hex>"; the file itself is the run's artifact code/.
    CODE = PREFIX + "code."
    # The cell's data, also logged as an MLflow dataset input (the UI's Dataset column); tags, so that
    # tables read it cheaply through either reader.
    DATASET = PREFIX + "dataset"  # "CIFAR-10", "CIFAR-10 (JPEG)" or "synthetic"
    DATASET_DIGEST = PREFIX + "dataset_digest"  # of the full cached arrays
    DATA_SOURCE = PREFIX + "data_source"  # the cache's description: where it was prepared from
    TRAIN_SIZE = PREFIX + "train_size"  # images the cell trained on (after the validation hold-out)
    GIT_COMMIT = "mlflow.source.git.commit"
    PARENT_RUN = "mlflow.parentRunId"
    # MLflow's own: a run's or an experiment's Description (rendered as markdown in the UI), and the kind
    # of experiment, which makes the UI show a runs list and charts rather than its GenAI traces page.
    FULL_COST = PREFIX + "full_cost"  # on a smoke profile's sweep run: what the full profile costs (`sweeper list`)
    NOTE = "mlflow.note.content"
    EXPERIMENT_KIND = "mlflow.experimentKind"


MODEL_TRAINING = "custom_model_development"  # the mlflow.experimentKind value of model training
UI_MODE = "workflowType=machine_learning"  # the UI's model-training view, as a URL query


class Attr:
    """Optuna trial user attributes."""

    CELL = PREFIX + "cell"
    LABEL = PREFIX + "label"
    SEED = PREFIX + "seed"
    EPOCHS = PREFIX + "epochs"
    EPOCH = PREFIX + "epoch"
    SKIP = PREFIX + "skip"
    WORKER = PREFIX + "worker"
    MLFLOW_RUN = PREFIX + "mlflow_run"
    ERROR = PREFIX + "error"
    INTERRUPTED = PREFIX + "interrupted"


# Metric names are named choices: sweeper.catalogue.METRICS lists them, with when each is logged.

DEFAULT_PROFILE = "default"  # the profile tag of a sweep run with no --profile


def profile_tag(profile: str | None) -> str:
    """The sweeper.profile tag of a profile (None: the spec's own settings)."""
    return profile or DEFAULT_PROFILE
