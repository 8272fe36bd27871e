"""Front ends: scikit-learn-style estimators."""
