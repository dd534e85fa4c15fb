"""`make bench`: every stage of the pipeline measured side by side with its raw baseline."""
