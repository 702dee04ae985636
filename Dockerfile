FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml ./
RUN pip install --upgrade pip && pip install .
COPY . .
RUN DEBUG=true python manage.py collectstatic --noinput -v 0
RUN useradd --create-home --uid 1000 tenter
USER 1000:1000
EXPOSE 8000
CMD ["gunicorn", "-c", "python:config.gunicorn", "config.wsgi:application"]
