# Test suite package marker: lets test modules import helpers as `tests.support...`.
