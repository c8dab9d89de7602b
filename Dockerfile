FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# the shared audio volume starts with this directory's owner, so the API (nobody) can write it
RUN mkdir -p /srv/zenscall/audio && chown nobody:nogroup /srv/zenscall/audio
USER nobody
EXPOSE 8000
# gunicorn.conf.py (read from /app) sets the gevent worker with JSON errors and Prometheus multiprocess mode
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "wsgi:app"]
