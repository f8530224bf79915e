"""Process settings from the environment (``Settings``); secrets stay ``SecretStr``."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import MissingSecretError


def normalize_database_url(url: str) -> str:
    """Map plain ``sqlite://`` / ``postgresql://`` URLs to the async drivers patchwarden uses."""
    for plain, async_ in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return async_ + url[len(plain) :]
    return url


class Settings(BaseSettings):
    """Process settings from the environment. Secrets stay ``SecretStr`` and never reach logs."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    database_url: str = Field(
        default="sqlite+aiosqlite:///patchwarden.db",
        validation_alias=AliasChoices("PATCHWARDEN_DATABASE_URL"),
    )
    config_path: Path = Field(default=Path("patchwarden.yaml"), validation_alias="PATCHWARDEN_CONFIG")
    audit_key: SecretStr | None = Field(default=None, validation_alias="PATCHWARDEN_AUDIT_KEY")
    calendar_token: SecretStr | None = Field(default=None, validation_alias="PATCHWARDEN_CALENDAR_TOKEN")
    secrets_key: SecretStr | None = Field(default=None, validation_alias="PATCHWARDEN_SECRETS_KEY")
    audit_key_file: Path = Field(default=Path("patchwarden-audit.key"), validation_alias="PATCHWARDEN_AUDIT_KEY_FILE")

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value.rstrip("/") + "/"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    def require(self, *names: str) -> None:
        """Raise ``MissingSecretError`` naming the first missing or empty secret."""
        env_names = {
            "slack_bot_token": "SLACK_BOT_TOKEN",
            "slack_signing_secret": "SLACK_SIGNING_SECRET",
            "slack_app_token": "SLACK_APP_TOKEN",
        }
        for name in names:
            value = getattr(self, name)
            if value is None or not value.get_secret_value().strip():
                raise MissingSecretError(
                    f"{env_names[name]} is not set or empty; patchwarden serve needs it "
                    "(see the README, section 'Slack app set-up')"
                )
