# ruff: noqa: UP008, UP032  (kept as published)
"""pytorch/examples mnist/main.py (the CNN, Adadelta, StepLR), as published, on the CPU.

Only the dataset is replaced: the local IDX arrays with torchvision's MNIST item transform (PIL
image -> ToTensor -> Normalize), so each item costs what it costs there. The example's own test()
after each epoch is the curve's evaluation. Epochs: 14 as published; PEER_EPOCHS caps them.
"""

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from _common import Curve, load
from PIL import Image
from torch.optim.lr_scheduler import StepLR
from torchvision import transforms


class IdxMNIST(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST's __getitem__ over arrays already in memory."""

    def __init__(self, images, labels, transform):
        self.data, self.targets = torch.from_numpy(images.copy()), torch.from_numpy(labels.astype("int64"))
        self.transform = transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        return self.transform(img), target


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(model, device, train_loader, optimizer, epoch, log_interval=10):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % log_interval == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item()))


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction='sum').item()  # sum up batch loss
            pred = output.argmax(dim=1, keepdim=True)  # get the index of the max log-probability
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)
    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'.format(
        test_loss, correct, len(test_loader.dataset),
        100. * correct / len(test_loader.dataset)))
    return correct / len(test_loader.dataset)


def main(epochs=14, batch_size=64, test_batch_size=1000, lr=1.0, gamma=0.7, seed=1):
    torch.manual_seed(seed)
    device = torch.device("cpu")
    transform = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize((0.1307,), (0.3081,))
    ])
    (x_train, y_train), (x_test, y_test) = load()
    dataset1, dataset2 = IdxMNIST(x_train, y_train, transform), IdxMNIST(x_test, y_test, transform)
    train_loader = torch.utils.data.DataLoader(dataset1, batch_size=batch_size)
    test_loader = torch.utils.data.DataLoader(dataset2, batch_size=test_batch_size)

    curve = Curve()
    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=lr)

    scheduler = StepLR(optimizer, step_size=1, gamma=gamma)
    for epoch in range(1, epochs + 1):
        train(model, device, train_loader, optimizer, epoch)
        curve.snapshot(epoch, lambda: {k: v.detach().clone() for k, v in model.state_dict().items()})
        scheduler.step()

    def accuracy_at(state):
        model.load_state_dict(state)
        return test(model, device, test_loader)

    curve.finish(accuracy_at)


if __name__ == "__main__":
    main(epochs=int(os.environ.get("PEER_EPOCHS", 14)))
