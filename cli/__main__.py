"""`python -m duo_ai_cli`: the `duo-ai` command, run by the current Python."""

from duo_ai_cli.main import main

main()
