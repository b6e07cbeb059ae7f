"""The foundation every layer may use: errors, validation, numeric tolerances, results, model state."""
