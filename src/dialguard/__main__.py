import sys

from dialguard.cli import main

sys.exit(main())
