"""What an Experiment does, as pure functions the operator and the local runner both call.

`space` turns the matrix and the search into trials, `children` turns trials into FineTuneJob
and Evaluation manifests, `stopping` holds the median rule, and `progress` decides, from what the
children report, what to create, what to stop, and what the Experiment's status says. Nothing
here talks to a cluster or a process: the operator and the runner only fetch, create and stop.
"""
