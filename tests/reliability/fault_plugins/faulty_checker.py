"""A test image checker whose behaviour a test switches at run time: pass, raise, or hang past the safety timeout.

The mode is the text of `<data dir>/faulty_checker_mode` ("raise", "hang"; missing or anything else: pass),
so a test drives the running app's checker without touching the app. A hang ends when the mode changes,
so the checker thread the gate abandoned does not outlive the test.
"""

import time

from t2i.plugins import ImageChecker, Verdict

HANG_AT_MOST_S = 120


class FaultyChecker(ImageChecker):
    """Passes every image unless the mode file says to raise or to hang."""

    name = "faulty_checker"
    label = "Faulty checker (reliability tests)"

    def __init__(self, mode_file):
        self.mode_file = mode_file

    def mode(self) -> str:
        try:
            return self.mode_file.read_text().strip()
        except FileNotFoundError:
            return "pass"

    def check_image(self, image) -> Verdict:
        mode = self.mode()
        if mode == "raise":
            raise RuntimeError("faulty checker: its model is unavailable")
        if mode == "hang":
            deadline = time.monotonic() + HANG_AT_MOST_S
            while self.mode() == "hang" and time.monotonic() < deadline:
                time.sleep(0.05)
        return Verdict(False)


def register(settings):
    return [FaultyChecker(settings.data_dir / "faulty_checker_mode")]
