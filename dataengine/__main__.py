from dataengine.cli import run

run()
