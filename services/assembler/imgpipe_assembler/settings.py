from pydantic import Field

from imgpipe_bus import BusSettings
from imgpipe_runtime.settings import LogSettings, MongoSettings, PublicUrlSettings


class Settings(PublicUrlSettings):
    assembler_batch_size: int = Field(200, ge=1, description="Row results written to MongoDB in one round trip.")
    assembler_batch_wait_s: float = Field(0.02, ge=0)

    kafka: BusSettings = Field(default_factory=BusSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    log: LogSettings = Field(default_factory=LogSettings)
