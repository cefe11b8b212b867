"""Training the hypernetwork, as the official training/coach_hyperstyle.py: losses (losses.py) on converted loss
networks, the step (step.py), the optimisers (optim.py), data (data.py), run files and resume (state.py), the loop
(coach.py) and the entry point `train` (api.py)."""
