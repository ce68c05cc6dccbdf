from cmbml.cli import app

app(prog_name="cmbml")
