"""`python run.py [KEY=VALUE ...]`: one MOSAIC job, or with `-m` a grid (`mosaic-run` once installed).

The application lives in `mosaic/app.py`; its config tree in `mosaic/conf/`.
"""

from mosaic.app import entry

if __name__ == "__main__":
    entry()
