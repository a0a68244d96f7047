# Conveniences; scripts/ does the work (and works where make is not installed).
.PHONY: demo test lint clean

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

clean:
	rm -rf .venv build dist *.egg-info .pytest_cache .ruff_cache test-artifacts
