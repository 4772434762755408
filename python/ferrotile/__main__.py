import sys

from ferrotile.launch import main

sys.exit(main())
