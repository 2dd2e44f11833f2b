"""DSM Explorer, the Streamlit app: main.py routes to one page per file in views/."""
