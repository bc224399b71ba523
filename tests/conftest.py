import os
import sys

# Let `pytest` work from a plain checkout too (make test installs the package editable).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
