"""`python -m infra ...` is the `streamrec` command."""
from infra.cli import main

main()
