from mailward.config.model import Settings


def test_every_setting_is_described() -> None:
    for name, section in Settings.model_fields.items():
        model = section.annotation
        assert model is not None
        for key, field in model.model_fields.items():  # type: ignore[union-attr]
            assert field.description, f"{name}.{key} has no description"


def test_db_path_defaults_under_state_dir() -> None:
    assert str(Settings().db_path) == "/var/lib/mailward/mailward.db"
