from mailward.errors import ConfigError, MailwardError


def test_config_error_names_key() -> None:
    err = ConfigError("detectors.short_ban.failures", "must be positive")
    assert isinstance(err, MailwardError)
    assert str(err) == "detectors.short_ban.failures: must be positive"
