"""Infrastructure every part of MOSAIC uses and none of it is about: the on-disk cache (`cache`), the Hugging Face
hub (`hub`), the one exception type (`errors`), timing and progress (`timing`), returning freed heap (`heap`)."""
