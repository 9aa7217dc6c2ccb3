import sys

from t2i.settings import load_settings

load_settings()  # a bad T2I_* variable stops the CLI here, before the model stack is imported
from t2i.cli import main  # noqa: E402

sys.exit(main())
