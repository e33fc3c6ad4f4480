import sys

from melodygen.cli import main

sys.exit(main())
