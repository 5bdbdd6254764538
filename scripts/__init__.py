"""Development scripts (set-up, tests, measurements); not part of the installed package."""
