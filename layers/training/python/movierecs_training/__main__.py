import sys

from movierecs_training.cli import main

sys.exit(main())
