"""python -m sempairs.cli"""

from sempairs.cli import app

app()
