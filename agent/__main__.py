"""`python -m agent` is the `isthmus` command."""
from agent.cli.main import main

raise SystemExit(main())
