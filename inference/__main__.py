"""``python -m inference``: the API with settings from the environment."""
from inference.server import run
from schemas.settings import get_settings

if __name__ == "__main__":
    from schemas.errors import InsecureConfiguration

    try:
        run(get_settings())
    except InsecureConfiguration as exc:
        raise SystemExit(f"error: {exc}") from None
