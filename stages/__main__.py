from stages.cli import app

app(prog_name="cmbml")
