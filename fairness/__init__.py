"""Dataset bias and model fairness (issue 22): group-fairness measures with bootstrap intervals
(metrics), the data / simple model comparison (analysis), reports and plots (report)."""
