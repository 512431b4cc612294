# pytester runs the segjet pytest plugin inside a throwaway user project (tests/integration/test_harness.py).
pytest_plugins = ["pytester"]
