"""Service configuration, read from PLATEAU_* environment variables (or a .env file)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLATEAU_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///var/plateau.db",
        description="SQLAlchemy URL. Embedded default: a SQLite file; production: postgresql+psycopg://…",
    )
    broker_url: str = Field(
        "filesystem://",
        description="Celery broker. Embedded default: kombu's filesystem transport; production: redis://…",
    )
    broker_dir: Path = Field(Path("var/broker"), description="Folder used by the filesystem broker.")
    data_root: Path = Field(
        Path("var/data"), description="Every dataset and weights path in a spec is relative to this folder."
    )
    artifacts_dir: Path = Field(Path("var/artifacts"), description="Per-job checkpoints and final models.")
    min_free_artifacts_bytes: int = Field(
        256 << 20, ge=0, description="/readyz fails while the artifacts volume has less free space (one checkpoint)."
    )
    max_infra_retries: int = Field(
        5, ge=0, description="Times a job goes back to the queue on a full artifacts disk before it fails."
    )
    broker_transport_options: dict = Field(
        default_factory=dict, description="Extra kombu transport options (JSON), e.g. unacked_restore_interval."
    )
    queue: str = Field("gpu", description="Celery queue the training task is routed to.")
    visibility_timeout: int = Field(
        172_800, description="Seconds before Redis redelivers an unacknowledged task; keep above the longest job."
    )
    max_attempts: int = Field(3, ge=1, description="A job redelivered more often than this fails.")
    lease_seconds: float = Field(60.0, gt=0, description="A running job's lease; a worker renews it while it trains.")
    reconcile_interval: float = Field(30.0, gt=0, description="Seconds between the worker's reconciler passes.")
    reconcile_in_worker: bool = Field(
        True,
        description="The worker runs the reconciler; the embedded launcher runs one of its own and turns this off.",
    )
    restart_backoff_seconds: float = Field(
        1.0, gt=0, description="Embedded launcher: first wait before restarting a child that exited; doubles each time."
    )
    restart_backoff_max_seconds: float = Field(
        60.0, gt=0, description="Embedded launcher: the longest wait between restarts of a child that keeps exiting."
    )
    init_new_database: bool = Field(
        False,
        description="Create a new SQLite database although its WAL file or the artifacts folder shows an earlier one.",
    )
    requeue_after: float = Field(
        300.0, gt=0, description="A job queued this long whose message is not waiting on the broker is sent again."
    )
    cancel_poll_seconds: float = Field(1.0, gt=0, description="How often a training worker looks for a cancel request.")
    max_epochs: int = Field(1000, ge=1, description="Upper bound on a spec's epochs.")
    page_size_max: int = Field(1000, ge=1, description="Largest page served by list endpoints.")
    analysis_history_cache_epochs: int = Field(
        30_000,
        ge=0,
        description="Validated epoch rows each API process keeps for analyses, topped up per epoch (0: off).",
    )
    metrics_page_cache_mb: int = Field(
        64, ge=0, description="Serialized metrics pages each API process keeps, revalidated per epoch (0 turns it off)."
    )
    auth_enabled: bool = Field(
        False,
        description="Require an API key (Authorization: Bearer …). Off in the embedded default; on in production.",
    )
    max_active_jobs_per_tenant: int = Field(100, ge=1, description="Queued plus running jobs one tenant may have.")
    max_image_size: int = Field(512, ge=75, le=512, description="Largest dataset.image_size a spec may ask for.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted (413 above).")
    migrate_on_start: bool = Field(True, description="Upgrade the schema to the newest revision when a process starts.")
    metrics_token: SecretStr | None = Field(
        None, description="When set, GET /metrics needs `Authorization: Bearer <token>`; open otherwise."
    )
    imagenet_available: bool = Field(
        True,
        description="Workers can load the ImageNet weights (download or Keras cache); when false the autopilot "
        "skips remedies that switch a job to them, unless imagenet_weights_file is set.",
    )
    imagenet_weights_file: Path | None = Field(
        None,
        description="A local copy of Inception-V3's ImageNet weights without its top (Keras's \"notop\" file, or a "
        'base saved with save_weights): workers load it for weights "imagenet" instead of downloading.',
    )

    @property
    def imagenet_loadable(self) -> bool:
        """Whether a job asking for weights "imagenet" can get them: from the local copy, or a download."""
        return self.imagenet_weights_file is not None or self.imagenet_available

    webhook_secret: SecretStr | None = Field(
        None, description="Key of the HMAC-SHA256 signature on webhook deliveries (X-Plateau-Signature)."
    )
    webhook_allow_private: bool = Field(
        False, description="Allow webhook targets on loopback, link-local and private networks."
    )
    webhook_max_attempts: int = Field(
        5, ge=1, le=20, description="Tries per webhook delivery (retried on 5xx, 429 and network errors)."
    )
    webhook_backoff_seconds: float = Field(
        1.0, gt=0, description="First wait between webhook tries; doubles each time, capped at 60 s."
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one webhook request.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
