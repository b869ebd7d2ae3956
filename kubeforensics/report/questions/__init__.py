"""One module per scenario: the analyst's questions, each answered by one library call."""
