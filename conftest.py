"""`pytest --nbval notebooks` runs the course in quick mode: small real samples, no network.

Set here, before any notebook kernel starts, so that the kernels inherit it; tests/conftest.py
turns quick mode off again inside every unit test.
"""
import os

os.environ["CNNCOURSE_QUICK"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
