"""Small label files of every format (NIH, PadChest, CheXpert, VinDr-CXR), written by the tests themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd


def nih_frame(patients: int = 12) -> pd.DataFrame:
    findings = ["No Finding", "Effusion", "Cardiomegaly|Effusion", "Mass|Nodule|Effusion", "Hernia", "No Finding"]
    rows = []
    for p in range(patients):
        for k in range(2):
            rows.append({"Image Index": f"{p + 1:08d}_{k:03d}.png", "Finding Labels": findings[(p + k) % 6],
                         "Follow-up #": k, "Patient ID": p + 1, "Patient Age": 50, "Patient Gender": "M",
                         "View Position": "PA" if k == 0 else "AP"})
    return pd.DataFrame(rows)


def padchest_frame(patients: int = 12) -> pd.DataFrame:
    labels = ["['normal']", "['pleural effusion', ' nodule']", "[' cardiomegaly', 'pleural effusion']", "['']",
              "nan", "['nodule', 'nodule']"]
    projections = ["PA", "L", "AP_horizontal", "AP", "COSTAL", "UNK"]
    rows = []
    for p in range(patients):
        for k in range(3):
            rows.append({"": len(rows), "ImageID": f"{p}_{k}_x.png", "ImageDir": str(p % 3), "StudyID": f"st{p}",
                         "PatientID": f"pat{p}", "Projection": projections[(p + k) % 6],
                         "Labels": labels[(2 * p + k) % 6]})
    return pd.DataFrame(rows)


def chexpert_frame(patients: int = 12) -> pd.DataFrame:
    rows = []
    for p in range(patients):
        for k, (kind, position) in enumerate([("Frontal", "AP"), ("Lateral", ""), ("Frontal", "PA")]):
            view = "frontal" if kind == "Frontal" else "lateral"
            rows.append({"Path": f"CheXpert-v1.0-small/train/patient{p + 1:05d}/study1/view{k + 1}_{view}.jpg",
                         "Sex": "Female", "Age": 60, "Frontal/Lateral": kind, "AP/PA": position,
                         "No Finding": [1.0, None, None][(p + k) % 3], "Edema": [None, 1.0, -1.0, 0.0][(p + k) % 4],
                         "Pleural Effusion": [1.0, 0.0, -1.0][(p * k) % 3]})
    return pd.DataFrame(rows)


def vindr_frame() -> pd.DataFrame:
    rows = [("img1", "Cardiomegaly", "R1"), ("img1", "Cardiomegaly", "R2"), ("img1", "Nodule/Mass", "R3"),
            ("img1", "Cardiomegaly", "R2"), ("img2", "No finding", "R1"), ("img2", "No finding", "R2"),
            ("img2", "Aortic enlargement", "R3"), ("img3", "No finding", "R4"), ("img3", "No finding", "R5"),
            ("img3", "No finding", "R6")]
    frame = pd.DataFrame(rows, columns=["image_id", "class_name", "rad_id"])
    frame.insert(2, "class_id", 0)
    frame["x_min"] = np.where(frame["class_name"] == "No finding", np.nan, np.arange(len(frame)) * 10.0)
    return frame
