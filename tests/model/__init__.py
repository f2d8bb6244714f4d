# The state-isolation model test's machinery (see tests/integration/test_state_model.py):
# model.py (what each client alone has done, and what it must therefore see),
# clients.py (PyMySQL and mysql-connector clients behind one interface),
# runner.py (the seeded generator that drives clients and checks them against the model).
