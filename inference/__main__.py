"""``python -m inference``: the API with settings from the environment."""
from inference.server import run
from schemas.settings import get_settings

if __name__ == "__main__":
    run(get_settings())
