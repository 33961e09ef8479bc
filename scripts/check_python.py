"""Says in one line whether this Python can run rokt-sfmc; `make` runs it before pip does.

It runs under the Python being judged, whatever its age, so it keeps to syntax Python 2.7 reads.
argv: the floor (setup.cfg's python_requires), the supported minor versions (setup.cfg's
classifiers, space-separated). Prints nothing and exits 0 for a supported Python; prints a warning
and exits 0 for one newer than the newest supported; prints the refusal and exits 2 below the floor.
With --version it prints this Python's version and nothing else.
"""

import sys


def version(text):
    return tuple(int(part) for part in text.split("."))


def main(argv):
    found = "%d.%d.%d" % tuple(sys.version_info[:3])
    if argv == ["--version"]:
        print(found)
        return 0
    floor, tested = argv[0], argv[1].split()
    if version(found) < version(floor):
        print(
            "%s is Python %s; rokt-sfmc needs Python %s or newer (supported: %s): "
            "make install PYTHON=python%s" % (sys.executable, found, floor, ", ".join(tested), tested[-1])
        )
        return 2
    if version(found)[:2] > version(tested[-1]):
        print("warning: Python %s is newer than the newest supported (%s); going on" % (found, tested[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
