# Liên thông's production image: Airflow's official image with this project installed as a wheel, its DAGs and
# its schemas (docs/deployment.md). Everything is installed here, at build time: nothing is downloaded when a
# container starts. No secret goes into the image: they come from the environment (docker-compose.yml and .env) or
# from Airflow's secrets backend.
#
#   docker build -t lienthong-airflow:0.1.0 .
#
# Needs, beside this file, constraints.txt: Airflow's published constraints file for 3.3.2 and Python 3.11, which the
# builder downloads beforehand (docs/deployment.md says how). Needs BuildKit (docker build's default builder).
# AIRFLOW_VERSION is requirements.txt's apache-airflow pin (tests/deploy checks it): change both together.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11

# -- build: the project's wheel, and the constraints it is installed with -------------------------------------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS build
COPY --chown=airflow:0 . /tmp/src
# The wheel alone (--no-deps): its dependencies are the lock's, installed below. merge_constraints.py drops from
# Airflow's constraints every package requirements.txt pins, so that the two never disagree: the lock wins.
RUN python -m pip wheel --no-deps --no-cache-dir --wheel-dir /tmp/wheels /tmp/src \
    && python /tmp/src/deploy/merge_constraints.py /tmp/src/constraints.txt /tmp/src/requirements.txt \
        > /tmp/constraints.txt

# -- the image -------------------------------------------------------------------------------------------------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
USER airflow
# The lock (requirements.txt) under Airflow's constraints, Airflow itself held at its version, then the project's
# wheel without dependencies (as `make venv` installs it); pip check fails the build on a conflict instead of the
# first task that meets it. The wheel and the files are mounted for this step only: no layer keeps them.
RUN --mount=type=bind,from=build,source=/tmp/wheels,target=/tmp/wheels \
    --mount=type=bind,from=build,source=/tmp/constraints.txt,target=/tmp/constraints.txt \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    pip install --no-cache-dir --constraint /tmp/constraints.txt "apache-airflow==${AIRFLOW_VERSION}" \
        --requirement /tmp/requirements.txt \
    && pip install --no-cache-dir --no-deps /tmp/wheels/lienthong-*.whl \
    && pip check \
    && lienthong --help >/dev/null

# The DAG files (not in the wheel): AIRFLOW__CORE__DAGS_FOLDER in docker-compose.yml.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
# The schemas as files, for operators and the partners' people (XSD, WSDL, OpenAPI, dataset schemas, agreements).
# The code reads the copy inside the wheel; an agency of your own goes in a folder named by LIENTHONG_SCHEMAS_PATH.
# Not under /opt/airflow, the working directory: a folder named `schemas` there would hide the packaged one.
COPY --chown=airflow:0 schemas/ /opt/lienthong/schemas/
COPY --chown=airflow:0 deploy/airflow-init.sh /opt/lienthong/airflow-init.sh
# LIENTHONG_VAR_DIR: each container's own working folder, in the container (no shared disk: the artifact store
# carries files between tasks). auth/: the simple auth manager's passwords, a volume of airflow-init and the API
# server only, owned by the airflow user as this folder is.
RUN mkdir -p /opt/airflow/var /opt/airflow/auth && chmod 0770 /opt/airflow/auth
