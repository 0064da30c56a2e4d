"""``python -m nblaunch``: the same CLI as the ``nblaunch`` console script."""

from nblaunch.cli import main

main()
