"""Faces in photos: FFHQ alignment (dlib landmarks) and paste-back."""
